"""MAFT shared domain: tasks, prompts, parsing, voting, debate, curation, metrics, DB schema.

Pure Python: nothing here imports a web or ML framework, so every service can import it.
"""

__version__ = "0.1.0"
