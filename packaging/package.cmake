# Install rules for everything beyond the two binaries, and the Debian
# package built by `cpack -G DEB` in a build directory (configure with
# -DCMAKE_INSTALL_PREFIX=/usr so `cmake --install` matches the package).
# Included from the top-level CMakeLists.txt.

set(EMBER_PKG ${PROJECT_SOURCE_DIR}/packaging)

install(FILES ${EMBER_PKG}/emberd.yaml DESTINATION /etc/ember)
install(FILES ${EMBER_PKG}/man/emberd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${EMBER_PKG}/man/emberctl.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${EMBER_PKG}/completion/emberctl.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME emberctl)
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  install(FILES ${EMBER_PKG}/systemd/emberd.service ${EMBER_PKG}/systemd/emberd.socket
          DESTINATION lib/systemd/system)
  install(FILES ${EMBER_PKG}/systemd/ember.sysusers
          DESTINATION lib/sysusers.d RENAME ember.conf)
  install(FILES ${EMBER_PKG}/systemd/ember.tmpfiles
          DESTINATION lib/tmpfiles.d RENAME ember.conf)
elseif(APPLE)
  install(FILES ${EMBER_PKG}/launchd/dev.ember.emberd.plist
          DESTINATION ${CMAKE_INSTALL_DATADIR}/ember/launchd)
endif()

set(CPACK_PACKAGE_NAME ember)
set(CPACK_PACKAGE_VENDOR "ember")
set(CPACK_PACKAGE_CONTACT "ember maintainers <maintainers@ember.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "microVM manager: emberd daemon and emberctl client")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "ember runs microVMs under QEMU or Firecracker on one host. emberd owns their\n"
  "lifecycles, vsock CIDs and state; emberctl drives it over a Unix socket.\n"
  "Includes systemd units (socket activation, Type=notify), the group ember\n"
  "for socket access, manual pages and bash completion.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from the binaries themselves (dpkg-shlibdeps, in
# dpkg-dev); hypervisors are recommended, not required: either one will do.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "qemu-system-arm, qemu-utils")
else()
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "qemu-system-x86, qemu-utils")
endif()
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
# The configuration is the administrator's: upgrades must not overwrite it.
file(WRITE ${CMAKE_BINARY_DIR}/deb/conffiles "/etc/ember/emberd.yaml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/deb/conffiles
    ${EMBER_PKG}/deb/postinst ${EMBER_PKG}/deb/prerm ${EMBER_PKG}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
