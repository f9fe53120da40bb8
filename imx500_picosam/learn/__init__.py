"""Training and judging the model: COCO-format data and crops (``data``, ``annotations_check``,
``splits``, ``sources``), teachers and their caches (``teacher``, ``teacher_cache``,
``proposals``), the training loop (``train``) and the evaluation (``evaluate``,
``contact_sheet``). Imports the ground floor, ``model`` and ``firmware``."""
