"""Getting and making datasets, run from the repository root: `python -m data.download_fineweb`,
`python -m data.build_dataset`, `python -m data.shakespeare`, `python -m data.check_dataset` (see README.md)."""
