// A new Azure ML workspace (when none is given) with a GPU cluster that scales to zero when idle.
param workspaceName string
param location string
param tags object
param appInsightsId string
param computeName string
param computeVmSize string
param computeMaxNodes int
param token string

resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stml${take(token, 18)}'
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_35: Azure ML reaches its workspace storage publicly unless the workspace is private (not in this template)
  //checkov:skip=CKV_AZURE_43: the name is 'stml' + 18 characters of uniqueString: lower-case letters and digits, 22 long
  kind: 'StorageV2'
  //checkov:skip=CKV_AZURE_206: zone-redundant (ZRS); jobs and models can be re-made, geo-replication is a cost choice
  sku: { name: 'Standard_ZRS' }
  properties: { allowBlobPublicAccess: false, minimumTlsVersion: 'TLS1_2', supportsHttpsTrafficOnly: true }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${take(token, 20)}'
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_109: Azure ML reads the workspace's vault over its public endpoint unless the workspace is private
  //checkov:skip=CKV_AZURE_189: as above; access is by RBAC only (enableRbacAuthorization)
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enablePurgeProtection: true
    enableSoftDelete: true
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' = {
  name: workspaceName
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_243: private endpoints need a VNet this template does not create; use an existing private workspace instead (workspaceName)
  identity: { type: 'SystemAssigned' }
  properties: {
    friendlyName: workspaceName
    storageAccount: mlStorage.id
    keyVault: vault.id
    applicationInsights: appInsightsId
  }
}

resource cluster 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' = {
  parent: workspace
  name: computeName
  location: location
  properties: {
    computeType: 'AmlCompute'
    properties: {
      vmSize: computeVmSize
      vmPriority: 'Dedicated'
      scaleSettings: { minNodeCount: 0, maxNodeCount: computeMaxNodes, nodeIdleTimeBeforeScaleDown: 'PT5M' }
    }
  }
}

output workspaceName string = workspace.name
