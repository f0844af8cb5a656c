"""python -m cli TASK [options]: what ./socklab runs."""
from cli import main

main()
