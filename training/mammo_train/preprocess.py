"""Image → model input, exactly as the Rust server's `imaging` module does it:
grey in [0, 1] (8-bit / 255, 16-bit / 65535, colour by Rec. 709 luma, alpha ignored), bilinear
resize to the model input when the size differs, 3 equal channels, (x - mean) / std."""

from pathlib import Path

import numpy as np
from PIL import Image

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def grey01(path: Path) -> np.ndarray:
    """H×W float32 in [0, 1]."""
    image = Image.open(path)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image, np.float32) / 65535.0
    a = np.asarray(image, np.float32) / 255.0
    if a.ndim == 2:
        return a
    if a.shape[2] in (1, 2):  # L or LA
        return a[:, :, 0]
    return a[:, :, :3] @ LUMA


def to_input(path: Path, size: int, mean: list[float], std: list[float]) -> np.ndarray:
    """3×size×size float32 tensor."""
    g = grey01(path)
    if g.shape != (size, size):
        g = np.asarray(Image.fromarray(g, "F").resize((size, size), Image.BILINEAR), np.float32)
    return np.stack([(g - m) / s for m, s in zip(mean, std)]).astype(np.float32)


def main() -> None:
    """python -m mammo_train.preprocess IMAGE OUT.f32 --size 224 --mean M,M,M --std S,S,S
    writes the tensor as little-endian float32 (used by the Rust/Python parity test)."""
    import argparse
    parser = argparse.ArgumentParser(description="preprocess one image as training does")
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--mean", default="0.498,0.498,0.498")
    parser.add_argument("--std", default="0.502,0.502,0.502")
    args = parser.parse_args()
    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    to_input(args.image, args.size, floats(args.mean), floats(args.std)).astype("<f4").tofile(args.out)


if __name__ == "__main__":
    main()
