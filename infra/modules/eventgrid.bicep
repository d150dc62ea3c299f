// Event Grid topics: the storage account's system topic (BlobCreated → ingest), and an optional custom topic
// tuneflow publishes run notifications to. The subscriptions are wired after deploy (subscriptions.bicep).
param location string
param tags object
param storageAccountName string
@description('Name of the custom notifications topic; empty: none.')
param notificationsTopicName string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource storageTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: 'evgst-${storageAccountName}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' } // writes dead letters with its identity (the account has no keys)
  properties: { source: storage.id, topicType: 'Microsoft.Storage.StorageAccounts' }
}

resource notifications 'Microsoft.EventGrid/topics@2024-06-01-preview' = if (!empty(notificationsTopicName)) {
  name: empty(notificationsTopicName) ? 'unused' : notificationsTopicName
  location: location
  tags: tags
  //checkov:skip=CKV_AZURE_191: the topic has a system-assigned identity (checkov does not read a conditional resource; tests/unit/test_infra.py checks it)
  //checkov:skip=CKV_AZURE_192: local auth is disabled, as above (test_infra checks disableLocalAuth)
  //checkov:skip=CKV_AZURE_193: the function app publishes over the public endpoint (no VNet); local auth is off, Entra only
  identity: { type: 'SystemAssigned' }
  properties: { inputSchema: 'CloudEventSchemaV1_0', disableLocalAuth: true, publicNetworkAccess: 'Enabled' }
}

output storageTopicName string = storageTopic.name
output storageTopicPrincipalId string = storageTopic.identity.principalId
output notificationsTopicName string = notificationsTopicName
output notificationsEndpoint string = empty(notificationsTopicName) ? '' : notifications!.properties.endpoint
