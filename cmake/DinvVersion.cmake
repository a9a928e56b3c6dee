# The git sha goes into `dinv --version` and every store. Computed at configure
# time; `cmake --build` re-runs it when HEAD moves.
execute_process(COMMAND git -C ${CMAKE_CURRENT_SOURCE_DIR} rev-parse --short=12 HEAD
                OUTPUT_VARIABLE DINV_GIT_SHA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT DINV_GIT_SHA)
  set(DINV_GIT_SHA "unknown")
endif()
execute_process(COMMAND git -C ${CMAKE_CURRENT_SOURCE_DIR} rev-parse --git-dir
                OUTPUT_VARIABLE _git_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(_git_dir)
  get_filename_component(_git_dir ${_git_dir} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  if(EXISTS ${_git_dir}/HEAD)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_git_dir}/HEAD)
  endif()
  if(EXISTS ${_git_dir}/refs/heads/main)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_git_dir}/refs/heads/main)
  endif()
endif()
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/src/core/build_info.h.in
               ${CMAKE_CURRENT_BINARY_DIR}/generated/dinv/core/build_info.h @ONLY)
