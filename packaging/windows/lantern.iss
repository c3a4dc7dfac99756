; Inno Setup script: wraps the PyInstaller folder dist\Lantern\ into Lantern-<version>-setup.exe.
; Build (on Windows, after PyInstaller; see packaging/README.md):
;   iscc /DAppVersion=0.1.0 packaging\windows\lantern.iss
; Installs per user by default (no administrator prompt), into %LOCALAPPDATA%\Programs\Lantern; the
; installer offers "for all users" when run with administrator rights. Chats, settings and models live in
; the user's data folder (%LOCALAPPDATA%\Lantern, app/paths.py) and are never removed by the uninstaller.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z lantern.iss (python -c "import app; print(app.__version__)")
#endif
#define Root "..\.."

[Setup]
AppId={{6C7A3E52-8F0B-4C1D-9B7E-5A4C2D1E0F93}
AppName=Lantern
AppVersion={#AppVersion}
AppVerName=Lantern {#AppVersion}
AppPublisher=Lantern developers
DefaultDirName={autopf}\Lantern
DefaultGroupName=Lantern
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
LicenseFile={#Root}\LICENSE
SetupIconFile={#Root}\build\lantern-extra\icons\lantern.ico
UninstallDisplayIcon={app}\Lantern.exe
OutputDir={#Root}\dist
OutputBaseFilename=Lantern-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\Lantern\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Lantern"; Filename: "{app}\Lantern.exe"; Comment: "Private, offline chat with gpt-oss"
Name: "{autodesktop}\Lantern"; Filename: "{app}\Lantern.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Lantern.exe"; Description: "{cm:LaunchProgram,Lantern}"; Flags: nowait postinstall skipifsilent
