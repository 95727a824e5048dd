"""export.py: a finished run's checkpoint written as ONNX, pt2, SavedModel or LiteRT by its backend and checked
against the framework's network (export_run.py); what both backends' ONNX files share (onnx_file.py); the command
line (export_cli.py)."""
