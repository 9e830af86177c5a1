// placeholder: filled in by the skeleton family work
