# azd postdeploy: subscribe the deployed functions to Event Grid. Idempotent: a deployment of the same
# template with the same parameters changes nothing, so `azd deploy` may run it any number of times.
$ErrorActionPreference = 'Stop'
if (-not $env:AZURE_RESOURCE_GROUP) { throw 'run through azd (azd up / azd deploy)' }
Write-Host "tuneflow: wiring Event Grid subscriptions to $($env:AZURE_FUNCTION_APP_NAME)"
az deployment group create --only-show-errors --output none `
  --name tuneflow-subscriptions `
  --resource-group $env:AZURE_RESOURCE_GROUP `
  --template-file infra/subscriptions.bicep `
  --parameters storageTopicName=$env:STORAGE_SYSTEM_TOPIC_NAME functionAppId=$env:AZURE_FUNCTION_APP_ID `
               storageAccountName=$env:AZURE_STORAGE_ACCOUNT_NAME dropContainer=$env:TUNEFLOW_DROP_CONTAINER `
               deadLetterContainer=$env:TUNEFLOW_DEAD_LETTER_CONTAINER
if ($LASTEXITCODE -ne 0) { throw 'the storage event subscription failed' }
az deployment group create --only-show-errors --output none `
  --name tuneflow-ml-subscriptions `
  --resource-group $env:ML_RESOURCE_GROUP `
  --template-file infra/ml-subscriptions.bicep `
  --parameters mlTopicName=$env:ML_SYSTEM_TOPIC_NAME functionAppId=$env:AZURE_FUNCTION_APP_ID `
               experiment=$env:TUNEFLOW_EXPERIMENT
if ($LASTEXITCODE -ne 0) { throw 'the Azure ML event subscriptions failed' }
Write-Host "tuneflow: drop datasets into container $($env:TUNEFLOW_DROP_CONTAINER) of $($env:AZURE_STORAGE_ACCOUNT_NAME)"
