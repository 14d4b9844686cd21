from korpair.cli import main

main()
