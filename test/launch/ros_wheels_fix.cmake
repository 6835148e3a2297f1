# Test toolchain only, never needed on a ROS 2 install: colcon builds sop_msgs
# here against the ROS 2 kilted wheels from PyPI, whose exported
# *__rosidl_generator_py targets name the include directories of the machine
# that built them. Passed as --cmake-args -DCMAKE_PROJECT_INCLUDE=<this file>,
# it applies sop_msgs' own wheel-build fix (pip/after_generate.cmake) once the
# package's CMakeLists.txt has imported those targets.
set(_sop_wheels_fix "${CMAKE_CURRENT_SOURCE_DIR}/pip/after_generate.cmake")
if(EXISTS "${_sop_wheels_fix}")
  function(_sop_apply_wheels_fix)
    find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
    include("${_sop_wheels_fix}")
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" CALL _sop_apply_wheels_fix)
endif()
