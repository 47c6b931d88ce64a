"""The `maft` command line: start the embedded product, ask questions, administer it.

It reaches services only through processes (`python -m services....`) and HTTP, never imports.
"""
