from iomodels.cli import main

if __name__ == "__main__":  # a pool process started by forkserver/spawn must not run the CLI again
    main()
