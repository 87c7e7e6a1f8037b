"""Foundation layer: flat parameter vectors (``params``), devices, data sets and
splits (``data``), the papers' models (``models``), scale profiles (``profiles``),
the one atomic file write (``io``), Markdown tables (``tables``) and the bootstrap
statistics the estimators share (``stats``). Imports nothing else of the package."""
