from iomodels.cli import main

main()
