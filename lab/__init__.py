"""The shared, backend-free layer. Its root holds what every layer may import (errors, atomic files,
the command-line ending, framework loading); each sub-package is one room, see ARCHITECTURE.md."""
