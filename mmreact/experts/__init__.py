"""Vision experts: each turns pixels into text an LLM reads well (plus a structured artifact).

Modules here import nothing heavy at import time; models load on first use, once per process.
"""
