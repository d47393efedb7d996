"""This project's additions to the port, each behind its own command: the toy data set
(genegan.py toy), eval (genegan.py eval), bench (genegan.py bench), your own photos
(align.py --image / --images) and your photo edited (genegan.py edit). They import genegan.py
and align.py; those import a module here only when its command runs."""
