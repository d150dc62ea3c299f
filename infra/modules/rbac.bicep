// The least each identity needs, in the app's resource group. Role ids are Azure's built-in ones
// (tests/unit/test_infra.py holds them against a table of the names).
param principalId string
param storageAccountName string
param appInsightsName string
@description('The notifications topic; empty: none.')
param notificationsTopicName string
param storageTopicPrincipalId string
@description('The deploying user, for trying the app (uploads, reads); empty: none.')
param userPrincipalId string = ''

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // the host's own blobs (AzureWebJobsStorage)
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource topic 'Microsoft.EventGrid/topics@2024-06-01-preview' existing = if (!empty(notificationsTopicName)) {
  name: empty(notificationsTopicName) ? 'unused' : notificationsTopicName
}

var storageRoles = [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, principalId, role)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, principalId, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource notify 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(notificationsTopicName)) {
  name: guid(resourceGroup().id, notificationsTopicName, principalId, roles.eventGridDataSender)
  scope: topic
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
  }
}

// The storage system topic writes dead letters with its own identity.
resource deadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, storageTopicPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    principalId: storageTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

resource user 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    principalId: userPrincipalId
    principalType: 'User'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}
