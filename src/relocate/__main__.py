from relocate.cli import main

main()
