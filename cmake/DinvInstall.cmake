# What dinv ships beside its executable, and how it is installed
# (docs/architecture.md, "Data files and installation").
#
#   cmake --install build --prefix P   gives   P/bin/dinv
#                                              P/share/dinv/{clip,configs,jobs,slurm,analysis}
#                                              P/share/dinv/modulefiles/dinv/<version>
#
# dinv finds P/share/dinv from its own path (io/data_files.h), so the tree can be
# moved as a whole. A build tree mirrors the layout in <build>/share/dinv with
# links to the source folders, so that a built dinv finds the same files.
include(GNUInstallDirs)

# data-directory entry -> folder of the source tree
set(DINV_DATA_FOLDERS
  clip=src/sd/clip
  configs=configs
  jobs=jobs
  slurm=slurm
  analysis=analysis)

# Links <dir>/<entry> to each source folder (a build tree's data directory).
function(dinv_stage_data dir)
  file(MAKE_DIRECTORY ${dir})
  foreach(pair IN LISTS DINV_DATA_FOLDERS)
    string(REPLACE "=" ";" pair ${pair})
    list(GET pair 0 entry)
    list(GET pair 1 source)
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${source} ${dir}/${entry} SYMBOLIC)
  endforeach()
endfunction()

# Install rules for the executable `target` and the data directory.
function(dinv_install target)
  set(data_dir ${CMAKE_INSTALL_DATADIR}/dinv)
  install(TARGETS ${target} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  # Keep the run-time path to LibTorch (and NCCL) outside the build tree: an
  # installed dinv runs against the same Python environment's libraries.
  set_target_properties(${target} PROPERTIES INSTALL_RPATH_USE_LINK_PATH TRUE)
  foreach(pair IN LISTS DINV_DATA_FOLDERS)
    string(REPLACE "=" ";" pair ${pair})
    list(GET pair 0 entry)
    list(GET pair 1 source)
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/${source}/ DESTINATION ${data_dir}/${entry}
            USE_SOURCE_PERMISSIONS PATTERN __pycache__ EXCLUDE PATTERN "*.pyc" EXCLUDE)
  endforeach()
  # An environment-module file (Environment Modules and Lmod read Tcl ones):
  # `module use P/share/dinv/modulefiles && module load dinv`.
  configure_file(${PROJECT_SOURCE_DIR}/cmake/dinv.modulefile.in ${PROJECT_BINARY_DIR}/modulefiles/dinv/${PROJECT_VERSION} @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/modulefiles/dinv/${PROJECT_VERSION}
          DESTINATION ${data_dir}/modulefiles/dinv)
endfunction()
