"""The command-line tools: `tevit-hf` and its subcommands (`cli.py` dispatches), and the Hub upload tool.

Each command module holds the arguments and the user-facing flow of one command and calls the library (the Hub-set
model files at the package root, `model_loading`, `data`, `evaluation`, `training`); nothing in the library imports
a command module, except the training script's optional Hub push, which uses the upload tool.
"""
