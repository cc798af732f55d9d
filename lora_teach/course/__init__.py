"""Course machinery: what runs the course (grading a class), as opposed to the LoRA it teaches."""
