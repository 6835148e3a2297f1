# pip / scikit-build-core only: point CMake and the ament index at the ROS
# prefix that the PyPI wheels installed (the venv root, or pip's build overlay).
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)

execute_process(
  COMMAND "${Python3_EXECUTABLE}" "${CMAKE_CURRENT_LIST_DIR}/find_ros_prefix.py"
  OUTPUT_VARIABLE SOP_ROS_PREFIX
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _sop_prefix_result
)
if(NOT _sop_prefix_result EQUAL 0)
  message(FATAL_ERROR "Cannot find the ROS 2 wheels' prefix: install "
    "ros-kilted-rosidl-default-generators into this Python first.")
endif()
message(STATUS "ROS prefix from the PyPI wheels: ${SOP_ROS_PREFIX}")

list(PREPEND CMAKE_PREFIX_PATH "${SOP_ROS_PREFIX}")
set(ENV{AMENT_PREFIX_PATH} "${SOP_ROS_PREFIX}")
set(ENV{CMAKE_PREFIX_PATH} "${SOP_ROS_PREFIX}")
# The rosidl generators import their Python modules and load the ROS
# libraries from that prefix.
set(ENV{LD_LIBRARY_PATH} "${SOP_ROS_PREFIX}/lib:$ENV{LD_LIBRARY_PATH}")
