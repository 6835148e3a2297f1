# pip / scikit-build-core only: the wheels' exported *__rosidl_generator_py
# targets carry the include directories of the machine they were built on
# (/opt/python/...). Point them at this Python's headers and NumPy's.
get_directory_property(_sop_imported IMPORTED_TARGETS)
foreach(_target IN LISTS _sop_imported)
  if(_target MATCHES "__rosidl_generator_py$")
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs)
      list(FILTER _dirs EXCLUDE REGEX "^/opt/python/")
    else()
      set(_dirs "")
    endif()
    list(APPEND _dirs ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dirs}")
  endif()
endforeach()
