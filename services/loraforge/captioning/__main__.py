from loraforge.captioning.main import main

main()
