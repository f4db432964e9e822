# `cmake --install build [--prefix P]`: the instseg program, the static libraries of the layers
# the embedding API needs, the public headers and a CMake package, so that another project writes
#   find_package(instseg REQUIRED)
#   target_link_libraries(app PRIVATE instseg::instseg)
# (docs/api.md). `cpack -G DEB` in the build folder makes a .deb of the same files.
include(CMakePackageConfigHelpers)

set(INSTSEG_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/instseg)

# instseg::instseg is instseg_api; the layers under it are exported too (as instseg::instseg_engine,
# ...) because static libraries carry their dependencies to the final link. The CLI, the server
# and `explain` are the program's own and stay out.
set(INSTSEG_EXPORTED_LAYERS instseg_core instseg_ops instseg_modeling instseg_checkpoint instseg_data instseg_io
    instseg_distributed instseg_engine instseg_api)
install(TARGETS ${INSTSEG_EXPORTED_LAYERS} EXPORT instsegTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS instseg RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The public headers of the exported layers: the API's, and the layers' for users who go below
# it. Those of the program's own layers (cli, serve, explain) stay out with their libraries.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/instseg DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h" PATTERN "cli" EXCLUDE PATTERN "serve" EXCLUDE PATTERN "explain" EXCLUDE)
install(EXPORT instsegTargets NAMESPACE instseg:: DESTINATION ${INSTSEG_INSTALL_CMAKEDIR}
        FILE instsegTargets.cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/instsegConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/package/instsegConfig.cmake
                              INSTALL_DESTINATION ${INSTSEG_INSTALL_CMAKEDIR})
# 0.x: a minor version may change the API, so only the same minor version is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/package/instsegConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/package/instsegConfig.cmake ${CMAKE_BINARY_DIR}/package/instsegConfigVersion.cmake
        DESTINATION ${INSTSEG_INSTALL_CMAKEDIR})

# The .deb: `cpack -G DEB` from the build folder (after building; cpack installs what is built).
# Runtime libraries the program links (LibTorch, OpenCV, cpp-httplib, libstdc++) come from
# dpkg-shlibdeps; the -dev packages are what find_package(instseg) looks for (its find_dependency
# calls in cmake/instsegConfig.cmake.in).
set(CPACK_PACKAGE_NAME instseg)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Mask R-CNN instance segmentation in C++ (LibTorch): program, library and CMake package")
set(CPACK_PACKAGE_CONTACT "instseg maintainers <instseg@localhost>")
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libtorch-dev (>= 1.13), libopencv-dev (>= 4.6), nlohmann-json3-dev, libdnnl-dev")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
