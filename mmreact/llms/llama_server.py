"""``python -m mmreact.llms.llama_server ARGS``: llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server ARGS``, same arguments), loading its models with mmreact's llama.cpp
settings for this CPU (:mod:`mmreact.llms.native`: no extra buffer types on CPUs with AMX, where
llama.cpp's AMX weight repacking crashes at the first token).
"""

from __future__ import annotations


def main() -> None:
    from .llama_cpu import extra_bufts, set_default_extra_bufts

    set_default_extra_bufts(extra_bufts().enabled)
    from llama_cpp.server.__main__ import main as server_main

    server_main()


if __name__ == "__main__":
    main()
