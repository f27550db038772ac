# Restart the ThreadX workstation on Windows: clear Python and Streamlit caches, stop this
# app's stale Streamlit processes (only those started from this folder), start it again.
# Usage:  powershell -ExecutionPolicy Bypass -File restart_streamlit.ps1 [-Port 8501]
param([int]$Port = 8501)
$ErrorActionPreference = "Stop"
$root = Split-Path -Parent $MyInvocation.MyCommand.Path
Set-Location $root

# 1. stale Streamlit processes of this app: started (by this script) with this folder's app.py
$appPath = Join-Path $root "app.py"
Get-CimInstance Win32_Process -Filter "Name LIKE 'python%'" |
    Where-Object { $_.CommandLine -and $_.CommandLine -match "streamlit" -and
                   $_.CommandLine -like "*$appPath*" } |
    ForEach-Object { Write-Host "stopping stale Streamlit process $($_.ProcessId)"; Stop-Process -Id $_.ProcessId -Force }

# 2. __pycache__ folders of the project (not of the virtual environment)
Get-ChildItem -Path $root -Recurse -Directory -Filter "__pycache__" |
    Where-Object { $_.FullName -notlike "*\.venv\*" } |
    ForEach-Object { Remove-Item -Recurse -Force $_.FullName }

# 3. Streamlit's cache
$python = Join-Path $root ".venv\Scripts\python.exe"
if (-not (Test-Path $python)) { $python = "python" }
& $python -m streamlit cache clear | Out-Null

# 4. start again
& $python -m threadx.data.synthetic | Out-Null
& $python -m streamlit run $appPath --server.port $Port --server.headless true --browser.gatherUsageStats false
