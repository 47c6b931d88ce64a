"""`maft experiment`: the paper's comparison (Base, Majority, Debate, Majority FT, STaR,
single-agent FT, MAFT and its ablations) over finetuning iterations, on this stack's inference
server and trainer. Entry: `python -m experiment run ... | report <dir>`."""
