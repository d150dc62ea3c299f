#!/bin/sh
# azd prepackage: the dashboard's chart library from npm (package.json pins it) into the app's files,
# as `make install` does locally (the deployed package has no node_modules).
set -eu
npm ci --omit=dev --no-audit --no-fund --loglevel=error
mkdir -p shared/dashboard/static/vendor
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css shared/dashboard/static/vendor/
