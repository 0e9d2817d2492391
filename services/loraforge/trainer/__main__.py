from loraforge.trainer.main import main

main()
