"""The grader's machinery: a box for each student's run (``box``), the run itself inside it (``runner``),
answers taken out as data (``answers``) and re-checked outside the student's kernel (``recheck``, with
``hidden`` inputs), and the class read once, safely (``snapshot``)."""
