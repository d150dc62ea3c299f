// The function app: Flex Consumption (FC1), Linux, the project's Python, the user-assigned identity for
// everything (deployment package, host storage, the app's storage and queue, telemetry).
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainer string
param appInsightsConnectionString string
@description('The app\'s own TUNEFLOW_* settings (every one a setting shared/settings.py knows).')
param appSettings object
param pythonVersion string = '3.11'
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_225: Flex Consumption scales per instance; zone redundancy is a separate (costlier) choice
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

// Identity-based connections: the host's storage (AzureWebJobsStorage) and the queue trigger's connection
// (TUNEFLOW_STORAGE_CONNECTION), both through the user-assigned identity; no key anywhere.
var platformSettings = {
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  TUNEFLOW_STORAGE_CONNECTION__queueServiceUri: storage.properties.primaryEndpoints.queue
  TUNEFLOW_STORAGE_CONNECTION__blobServiceUri: storage.properties.primaryEndpoints.blob
  TUNEFLOW_STORAGE_CONNECTION__credential: 'managedidentity'
  TUNEFLOW_STORAGE_CONNECTION__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_ENABLE_INIT_INDEXING: '1'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true' // the worker configures the Azure Monitor distro
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  //checkov:skip=CKV_AZURE_17: callers are API clients (OpenAI SDKs, Event Grid) authenticated by function keys, not client certificates
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero when idle (the point: cheap when idle)
  //checkov:skip=CKV_AZURE_213: health checks are not available on Flex Consumption; GET /api/health serves probes
  //checkov:skip=CKV_AZURE_222: the HTTP API is public by design, behind function keys
  kind: 'functionapp,linux'
  identity: { type: 'UserAssigned', userAssignedIdentities: { '${identityId}': {} } }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: { minTlsVersion: '1.2', ftpsState: 'Disabled', http20Enabled: true }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identityId }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: maximumInstanceCount, instanceMemoryMB: instanceMemoryMB }
      runtime: { name: 'python', version: pythonVersion }
    }
  }

  resource settings 'config' = {
    //checkov:skip=CKV_AZURE_13: App Service Authentication would sit in front of function keys the OpenAI clients send
    //checkov:skip=CKV_AZURE_63: HTTP logs go to Application Insights (requests and traces), not App Service logs
    //checkov:skip=CKV_AZURE_65: detailed error pages are an App Service (IIS) feature; errors go to Application Insights
    //checkov:skip=CKV_AZURE_66: failed request tracing is an App Service (IIS) feature; failures go to Application Insights
    //checkov:skip=CKV_AZURE_80: a Python app: no .NET Framework
    //checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container, not Azure Files
    //checkov:skip=CKV_AZURE_222: as the site: the HTTP API is public by design
    name: 'appsettings'
    properties: union(platformSettings, appSettings)
  }
}

output name string = site.name
output id string = site.id
output hostName string = site.properties.defaultHostName
