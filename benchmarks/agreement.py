"""Float-vs-quantized mask agreement of one checkpoint under MCT quantization variants, on the
build report's held-out calibration crops and on real validation prompts.

    .venv/bin/python benchmarks/agreement.py [--checkpoint C] \\
        [--variants ptq,ptq-no-shift-negative,ptq-z-threshold-16,gptq-5] \\
        [--annotations data/coco-subset/val.json --images ../shared/data/coco2017-train-subset/images]

The agreement is the build report's rule (mean IoU of ``float logits > 0`` vs ``quantized
logits > 0``), on (a) the 32 held-out crops of the bundled calibration photos and (b) every
other instance of the annotation file, each crop cut by the checkpoint's ROI rule. Each variant
is quantized afresh on the bundled calibration crops (no cache). Prints n for both sets.
"""

import argparse
from pathlib import Path

import numpy as np

from imx500_picosam.toolchain import quiet_tensorflow


def variants(mct, core_config_for):
    return {
        "ptq": None,
        "ptq-no-shift-negative": core_config_for(shift_negative_activation_correction=False),
        "ptq-z-threshold-16": core_config_for(z_threshold=16),
        "gptq-5": "gptq",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--variants", default="ptq,ptq-no-shift-negative,ptq-z-threshold-16,gptq-5")
    parser.add_argument("--annotations", type=Path, default=Path("data/coco-subset/val.json"))
    parser.add_argument("--images", type=Path, default=Path("../shared/data/coco2017-train-subset/images"))
    args = parser.parse_args()
    quiet_tensorflow()
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    from imx500_picosam.calibration import load_crops
    from imx500_picosam.firmware.build import mask_agreement
    from imx500_picosam.firmware.quantize import _representative_data
    from imx500_picosam.geometry import to_model_range
    from imx500_picosam.images import load_image_rgb
    from imx500_picosam.learn.data import crop_instance, load_instances
    from imx500_picosam.model.checkpoint import load_model
    from imx500_picosam.model.resolve import resolve_checkpoint
    from imx500_picosam.toolchain import converter_tpc_version

    ckpt = resolve_checkpoint(args.checkpoint)
    rule = ckpt.roi_rule
    float_model = load_model(ckpt)
    held_out = load_crops("held_out", rule=rule).images
    calibration = load_crops("calibration", rule=rule).images
    instances = load_instances(args.annotations, args.images)
    prompts = np.stack([crop_instance(load_image_rgb(i.image_path), instances.decode_mask(i), i.box_xywh, rule=rule).image
                        for i in instances.instances[::2]])
    real = to_model_range(prompts)
    tpc = get_target_platform_capabilities(tpc_version=converter_tpc_version(), device_type="imx500")
    configs = variants(mct, lambda **kw: mct.core.CoreConfig(quantization_config=mct.core.QuantizationConfig(**kw)))
    print(f"{ckpt.weights_path.name} (ROI rule {rule}); held-out crops n = {len(held_out)}, "
          f"{args.annotations} prompts n = {len(real)}")
    for name in args.variants.split(","):
        config = configs[name]
        data = _representative_data(calibration)
        if config == "gptq":
            gptq = mct.gptq.get_keras_gptq_config(n_epochs=5, use_hessian_based_weights=False,
                                                  use_hessian_sample_attention=False)
            quantized, _ = mct.gptq.keras_gradient_post_training_quantization(
                float_model, data, gptq_config=gptq, target_platform_capabilities=tpc)
        else:
            extra = {"core_config": config} if config is not None else {}
            quantized, _ = mct.ptq.keras_post_training_quantization(float_model, data, target_platform_capabilities=tpc,
                                                                    **extra)
        a, b = mask_agreement(float_model, quantized, held_out), mask_agreement(float_model, quantized, real)
        print(f"{name:24s} held-out {a['mean_iou']:.4f} (min {a['min_iou']:.4f})   validation prompts {b['mean_iou']:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
