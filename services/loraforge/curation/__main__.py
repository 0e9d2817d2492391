from loraforge.curation.main import main

main()
