from shardkv.cli.main import main

main()
