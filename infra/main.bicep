// tuneflow in Azure: `azd up` provisions this, deploys the function app, then hooks/postdeploy.* wires the
// Event Grid subscriptions (their destinations, the functions, exist only after the code is deployed).
// Local modules only (no registry modules), so every parameter can be checked offline (tests/unit/test_infra.py).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; with the subscription and location it seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource.')
param location string

@description('Name of an existing Azure ML workspace to fine-tune in (the common case); empty: one is created.')
param workspaceName string = ''

@description('Resource group of that existing workspace (empty: the one this template creates).')
param workspaceResourceGroup string = ''

@description('GPU VM size of the created compute cluster: one of the base model\'s finetune_compute_allow_list.')
@allowed([
  'Standard_NC24ads_A100_v4'
  'Standard_NC48ads_A100_v4'
  'Standard_NC96ads_A100_v4'
  'Standard_ND96asr_v4'
  'Standard_ND96amsr_A100_v4'
])
param computeVmSize string = 'Standard_NC24ads_A100_v4'

@description('Most nodes of the created cluster (it scales to zero when idle).')
@minValue(1)
param computeMaxNodes int = 1

@description('Base model to fine-tune (a registry model Azure fine-tunes today).')
param baseModel string = 'Phi-4-mini-instruct'

@description('Create a custom Event Grid topic for run notifications (CloudEvents).')
param notificationsTopic bool = true

@description('Object id of the deploying user, granted the data roles for trying the app (empty: none).')
param principalId string = ''

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var createWorkspace = empty(workspaceName)
var mlResourceGroupName = createWorkspace || empty(workspaceResourceGroup) ? rg.name : workspaceResourceGroup
var mlWorkspaceName = createWorkspace ? 'mlw-${token}' : workspaceName
var computeName = createWorkspace ? 'gpu-cluster' : 'serverless'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: { name: 'id-${token}', location: location, tags: tags }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: { name: 'st${token}', location: location, tags: tags, deploymentContainer: 'app-package-${token}' }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: { logAnalyticsName: 'log-${token}', appInsightsName: 'appi-${token}', location: location, tags: tags }
}

module ml 'modules/ml.bicep' = if (createWorkspace) {
  name: 'ml'
  scope: rg
  params: {
    workspaceName: mlWorkspaceName
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    computeName: computeName
    computeVmSize: computeVmSize
    computeMaxNodes: computeMaxNodes
    token: token
  }
}

module events 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    notificationsTopicName: notificationsTopic ? 'evgt-${token}' : ''
  }
}

module mlTopic 'modules/ml-topic.bicep' = {
  name: 'ml-topic'
  scope: resourceGroup(mlResourceGroupName)
  params: { location: location, tags: tags, workspaceName: mlWorkspaceName }
  dependsOn: [ml]
}

module app 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: 'func-${token}'
    planName: 'plan-${token}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainer: storage.outputs.deploymentContainer
    appInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: {
      TUNEFLOW_STORAGE_ACCOUNT_URL: storage.outputs.blobEndpoint
      TUNEFLOW_DROP_CONTAINER: storage.outputs.dropContainer
      TUNEFLOW_OUTPUT_CONTAINER: storage.outputs.outputContainer
      TUNEFLOW_SCORE_QUEUE: storage.outputs.scoreQueue
      TUNEFLOW_WORK_QUEUE: storage.outputs.workQueue
      TUNEFLOW_SUBSCRIPTION_ID: subscription().subscriptionId
      TUNEFLOW_RESOURCE_GROUP: mlResourceGroupName
      TUNEFLOW_WORKSPACE: mlWorkspaceName
      TUNEFLOW_COMPUTE: computeName
      TUNEFLOW_BASE_MODEL: baseModel
      TUNEFLOW_EXPERIMENT: 'tuneflow-chat-finetune'
      TUNEFLOW_RECONCILE_SCHEDULE: '0 */2 * * * *'
      TUNEFLOW_IDLE_TEARDOWN_SCHEDULE: '0 */5 * * * *'
      TUNEFLOW_EVENTGRID_TOPIC_ENDPOINT: events.outputs.notificationsEndpoint
    }
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    notificationsTopicName: events.outputs.notificationsTopicName
    storageTopicPrincipalId: events.outputs.storageTopicPrincipalId
    userPrincipalId: principalId
  }
}

module mlRbac 'modules/ml-rbac.bicep' = {
  name: 'ml-rbac'
  scope: resourceGroup(mlResourceGroupName)
  params: { principalId: identity.outputs.principalId, workspaceName: mlWorkspaceName }
  dependsOn: [ml]
}

// azd writes these into the environment; hooks/postdeploy.* reads them.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_FUNCTION_APP_ID string = app.outputs.id
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output TUNEFLOW_DROP_CONTAINER string = storage.outputs.dropContainer
output TUNEFLOW_DEAD_LETTER_CONTAINER string = storage.outputs.deadLetterContainer
output STORAGE_SYSTEM_TOPIC_NAME string = events.outputs.storageTopicName
output ML_SYSTEM_TOPIC_NAME string = mlTopic.outputs.name
output ML_RESOURCE_GROUP string = mlResourceGroupName
output TUNEFLOW_EXPERIMENT string = 'tuneflow-chat-finetune'
