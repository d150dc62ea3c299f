# azd prepackage: the dashboard's chart library from npm (package.json pins it) into the app's files,
# as `make install` does locally (the deployed package has no node_modules).
$ErrorActionPreference = "Stop"
npm ci --omit=dev --no-audit --no-fund --loglevel=error
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
New-Item -ItemType Directory -Force -Path shared/dashboard/static/vendor | Out-Null
Copy-Item node_modules/uplot/dist/uPlot.iife.min.js, node_modules/uplot/dist/uPlot.min.css shared/dashboard/static/vendor/
