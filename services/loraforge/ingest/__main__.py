from loraforge.ingest.main import main

main()
