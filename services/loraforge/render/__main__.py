from loraforge.render.main import main

main()
