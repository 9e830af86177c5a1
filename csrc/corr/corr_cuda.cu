// placeholder: filled in by the corr family work
