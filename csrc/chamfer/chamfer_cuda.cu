// placeholder: filled in by the chamfer family work
