#!/bin/sh
# macOS: sign dist/Lantern.app (made by `pyinstaller packaging/lantern.spec` on a Mac) and wrap it in a
# drag-to-Applications disk image, dist/Lantern-<version>.dmg. See packaging/README.md ("macOS").
#   CODESIGN_IDENTITY="Developer ID Application: ..." NOTARY_PROFILE=lantern packaging/macos/build_dmg.sh
# Without CODESIGN_IDENTITY the app is signed ad hoc (runs on this Mac; Gatekeeper warns elsewhere).
set -eu
cd "$(dirname "$0")/../.."
app=dist/Lantern.app
test -d "$app" || { echo "build $app first: python -m PyInstaller --noconfirm packaging/lantern.spec" >&2; exit 1; }
version=$(.venv/bin/python -c 'import app; print(app.__version__)')
plutil -lint "$app/Contents/Info.plist"
codesign --force --deep --options runtime --timestamp --sign "${CODESIGN_IDENTITY:--}" "$app"
codesign --verify --deep --strict "$app"
staging=$(mktemp -d)
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
dmg="dist/Lantern-$version.dmg"
rm -f "$dmg"
hdiutil create -volname "Lantern $version" -srcfolder "$staging" -ov -format UDZO "$dmg"
rm -rf "$staging"
if [ -n "${NOTARY_PROFILE:-}" ]; then   # xcrun notarytool store-credentials "$NOTARY_PROFILE" ... (once)
  xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "built $dmg"
