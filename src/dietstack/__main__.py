from dietstack.cli import main

main()
