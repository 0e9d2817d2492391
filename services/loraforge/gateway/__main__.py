from loraforge.gateway.main import main

main()
