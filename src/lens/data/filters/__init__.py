"""The nine Lens-800M cleaning stages, in the paper's order, and the runner that applies them.

corrupt -> area -> nsfw -> aesthetic -> watermark -> clarity -> entropy -> luminance -> near_dup.
Pixel-statistics stages always run; model stages run when given a model (else skipped, with a log line).
"""

STAGE_ORDER = (
    "corrupt",
    "area",
    "nsfw",
    "aesthetic",
    "watermark",
    "clarity",
    "entropy",
    "luminance",
    "near_dup",
)
