// One storage account, shared-key access off: the drop and output containers, the dead-letter container,
// the deployment package container and the score-job queue.
param name string
param location string
param tags object
param deploymentContainer string
param dropContainer string = 'datasets'
param outputContainer string = 'tuneflow'
param deadLetterContainer string = 'deadletters'
param scoreQueue string = 'tuneflow-score-jobs'
param workQueue string = 'tuneflow-work'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_35: Event Grid and a Flex Consumption app without a VNet reach it publicly; shared keys are off, identities hold the roles
  kind: 'StorageV2'
  //checkov:skip=CKV_AZURE_206: zone-redundant (ZRS); geo-replication of datasets a user can drop again is a cost choice, not a default
  sku: { name: 'Standard_ZRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: { deleteRetentionPolicy: { enabled: true, days: 7 } }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in [dropContainer, outputContainer, deadLetterContainer, deploymentContainer]: {
    parent: blobs
    name: container
    properties: { publicAccess: 'None' }
  }
]

resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: scoreQueue
}

// Deferred work: dataset folders read once settled, manifest sources prepared, run webhooks delivered.
resource work 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: workQueue
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output dropContainer string = dropContainer
output outputContainer string = outputContainer
output deadLetterContainer string = deadLetterContainer
output deploymentContainer string = deploymentContainer
output scoreQueue string = scoreQueue
output workQueue string = workQueue
