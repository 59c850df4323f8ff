"""python -m flowprep.cli"""
from flowprep.cli.main import main

main()
