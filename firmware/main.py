# Device entry point: run the meter on the board named in /board.txt.
import runner

runner.main()
