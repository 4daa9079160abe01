"""`streamproc convert`: a Qwen2.5-VL checkpoint to a Sophgo bmodel sized for the cameras.

plan.py derives the bmodel's geometry from the service's own segment planner; env.py sets up
the cached Python 3.10 converter environment (setup_converter.sh); run.py runs TPU-MLIR's
llm_convert.py and checks the result on the simulator. Nothing here imports the converter.
"""
