from dmm.cli import main

main()
