#!/bin/sh
# Installs Debian's libvlfeat1 (the numerical reference for HOG, DSIFT, LBP, SIFT) when it is
# missing and we can: as root with apt-get. Otherwise the reference tests skip with a message.
if ldconfig -p 2>/dev/null | grep -q 'libvl\.so'; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing libvlfeat1 (VLFeat reference for the feature tests)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvlfeat1) >/dev/null 2>&1 \
    || echo "could not install libvlfeat1; VLFeat comparison tests will be skipped"
else
  echo "libvlfeat1 not found and not root: VLFeat comparison tests will be skipped (sudo apt-get install libvlfeat1 to enable)"
fi
exit 0
